from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from .attachments import connect_signals

        # A deleted Attachment row takes its stored file along, however it was deleted.
        connect_signals()
