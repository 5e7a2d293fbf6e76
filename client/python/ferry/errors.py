"""The one exception the client raises for a refusal or a failure."""


class FerryError(Exception):
    """An error from the appliance (with its stable ``code``) or the client.

    ``status`` is the HTTP status, or 0 when the request never got an
    answer (connection refused, certificate mismatch, the ``ferry`` binary
    failing). ``code`` is one of the API's stable codes, e.g.
    ``bad_api_key``, ``unknown_share``, ``outside_share``, ``rate_limited``.
    """

    def __init__(self, status, code, message, retry_after=None):
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
