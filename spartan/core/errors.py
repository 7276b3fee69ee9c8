"""The one error the domain raises: a refusal the client is told about."""


class ChatError(Exception):
    """A request the rules refuse: a code for programs and a sentence for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
