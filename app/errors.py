"""The one exception a business rule raises when it says no to what a person asked."""


class RuleError(Exception):
    """A rule refused. `field` names the form field the message belongs beside (or None);
    `status` is the HTTP status the view answers with (422 unless the rule says otherwise).
    `values` fill the message's %(name)s places; `msgid` keeps the words before they are
    filled in, for a page that shows them in another language (the widget's catalogues)."""

    def __init__(self, message, field=None, status=422, values=None):
        self.msgid, self.values = message, values or {}
        message = message % self.values if values else message
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def by_field(self) -> dict:
        """Each message under the name of the field it belongs beside (None: the whole form).
        A rule that judges several fields in one pass keeps them all in `errors` (the flows'
        ConfigError), so that every bad field is named at once."""
        return dict(getattr(self, "errors", None) or {self.field: self.message})
