"""The one error type for bad user input: one line naming the file/field and what was expected."""


class InputError(ValueError):
    """Bad input data or configuration; ``str(err)`` reads ``<where>: <what was expected>``."""

    def __init__(self, where: object, expected: str) -> None:
        super().__init__(f"{where}: {expected}")
