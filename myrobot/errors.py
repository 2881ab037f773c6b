class ApiError(Exception):
    """A refusal an API handler raises; rendered in the API's error envelope."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []


from ninja import Schema  # noqa: E402


class FieldError(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    """The one error envelope of the API (docs/architecture.md, "HTTP API conventions")."""

    detail: str
    errors: list[FieldError]


def errors(*statuses: int) -> dict:
    """``response=`` entries documenting the 4xx/5xx a route answers with the envelope."""
    return {status: ErrorOut for status in statuses}
