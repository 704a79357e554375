import pytest

from accounts.forms import SignupForm
from accounts.models import User

pytestmark = pytest.mark.django_db


def test_signup_form_trims_the_display_name_and_saves_a_usable_password():
    form = SignupForm(
        {"username": "frank", "display_name": "  Frank  ", "password1": "good-pass-1234", "password2": "good-pass-1234"}
    )
    assert form.is_valid(), form.errors
    user = form.save()
    assert user.display_name == "Frank" and user.check_password("good-pass-1234")
    assert user.get_display_name() == "Frank"


def test_signup_form_runs_the_password_validators():
    form = SignupForm({"username": "grace", "password1": "123", "password2": "123"})
    assert not form.is_valid()
    assert "password2" in form.errors


def test_blank_display_name_falls_back_to_the_username():
    form = SignupForm(
        {"username": "heidi", "display_name": "", "password1": "good-pass-1234", "password2": "good-pass-1234"}
    )
    assert form.is_valid(), form.errors
    assert form.save().get_display_name() == "heidi"


def test_admin_user_search_finds_display_names(client):
    User.objects.create_superuser("root", password="pw-123456789")
    User.objects.create_user("ivan", password="pw-123456789", display_name="Ivan the Terrible")
    client.login(username="root", password="pw-123456789")
    html = client.get("/admin/accounts/user/?q=Terrible").content.decode()
    assert "ivan" in html
    assert "ivan" not in client.get("/admin/accounts/user/?q=Nobody").content.decode()
