"""The one exception a business rule raises when it says no to what a person asked."""


class RuleError(Exception):
    """A rule refused. `field` names the form field the message belongs beside (or None);
    `status` is the HTTP status the view answers with (422 unless the rule says otherwise)."""

    def __init__(self, message, field=None, status=422):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
