class ApiError(Exception):
    """A refusal an API handler raises; rendered in the API's error envelope."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
