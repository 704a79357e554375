"""The API docs page (Swagger UI, from drf-spectacular-sidecar) under the site's Content-Security-Policy."""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from drf_spectacular.views import SpectacularSwaggerSplitView

# The split view serves Swagger UI's start-up code as a script file of its own
# (same origin) instead of an inline <script>, so script-src stays 'self' here
# too. Its page template still carries one inline <style> block, so inline
# styles (never scripts) are allowed on this page only; it shows no user content.
docs_view = csp_update({"style-src": [UNSAFE_INLINE]})(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))
