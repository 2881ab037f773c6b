"""Admin form pieces: lists edited one item per line, and adding a staff member in one form."""

from __future__ import annotations

import re

from django import forms
from django.contrib.auth import get_user_model, password_validation

from .models import OrganizationMembership, Role

RESULT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class LineListField(forms.CharField):
    """A list of short names, edited one per line (no JSON to type)."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 40})

    def __init__(self, *, item_pattern=RESULT_NAME, item_hint="lower case letters, digits, _ or -", **kwargs):
        self.item_pattern, self.item_hint = item_pattern, item_hint
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value):
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        lines = [line.strip() for line in re.split(r"[\n,]", value or "")]
        return [line for line in lines if line]

    def validate(self, value):
        if self.required and not value:
            raise forms.ValidationError("Give at least one.", code="required")
        bad = [v for v in value if not self.item_pattern.match(v)]
        if bad:
            raise forms.ValidationError(f"Not a valid name: {', '.join(bad[:3])} (use {self.item_hint}).")
        seen = set()
        for v in value:
            if v in seen:
                raise forms.ValidationError(f"{v} is listed twice.")
            seen.add(v)

    def has_changed(self, initial, data):
        return self.to_python(initial if initial is not None else []) != self.to_python(data)


class StaffMemberForm(forms.ModelForm):
    """A new person for the organisation: their login (a staff user) and membership, together."""

    username = forms.CharField(max_length=150, help_text="What they log in with.")
    email = forms.EmailField(required=False)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput(render_value=False))
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput(render_value=False))

    class Meta:
        model = OrganizationMembership
        fields = ["organization", "role"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].initial = Role.STAFF

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        User = get_user_model()
        User.username_validator(username)
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("That username is taken: choose another.")
        return username

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            try:
                password_validation.validate_password(p1)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data

    def save(self, commit=True):
        """Makes the user (once, even if the admin calls this twice), then the membership.
        The admin's add view runs in one transaction: a failure leaves neither."""
        if self.instance.user_id:
            return super().save(commit)
        User = get_user_model()
        user = User(
            username=self.cleaned_data["username"], email=self.cleaned_data.get("email", ""),
            first_name=self.cleaned_data.get("first_name", ""), last_name=self.cleaned_data.get("last_name", ""),
            is_staff=True,  # may log in to the admin; what they see comes from the membership
        )
        user.set_password(self.cleaned_data["password1"])
        user.save()
        self.instance.user = user
        return super().save(commit)
