"""Masking of PHI for logs and for viewers."""


def mask_phone(phone: str | None) -> str:
    if not phone:
        return ""
    digits = str(phone)
    if len(digits) <= 4:
        return "•" * len(digits)
    return digits[:2] + "•" * (len(digits) - 4) + digits[-2:]


def mask_name(first: str | None, last: str | None = None) -> str:
    parts = [p for p in (first, last) if p]
    return " ".join(p[0] + "•" * max(len(p) - 1, 1) for p in parts) or "Unknown caller"
