"""Forms of the account pages (sign-up; login uses Django's AuthenticationForm)."""

from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import User


class SignupForm(UserCreationForm):
    """Username, display name and the password twice, checked by the configured validators."""

    display_name = forms.CharField(
        max_length=150,
        required=False,
        help_text="What others see next to your messages. Defaults to your username.",
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "display_name")

    def clean_display_name(self) -> str:
        return self.cleaned_data.get("display_name", "").strip()
