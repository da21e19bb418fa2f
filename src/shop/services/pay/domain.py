"""The pay service's rules: a payment's states. Plain Python, like every service's domain."""
from enum import IntEnum


class PaymentStatus(IntEnum):
    """A payment's is_paid (the original's values, also the platform notification's isPaid)."""

    UNPAID = 1
    PAID = 2
