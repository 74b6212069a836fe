"""What the dashboard's app and its pages share: roles, error types, the form reader."""
import urllib.parse
from typing import Annotated

from fastapi import Depends, Request

MAX_FORM = 64 * 1024
EVERYONE = ("operator", "cashier", "read-only")
PAYERS = ("operator", "cashier")
OPERATORS = ("operator",)


def local_url(url, extra=""):
    """A local redirect target (a form's "back": never another site) with `extra` added to its
    query string."""
    if not url.startswith("/") or url.startswith("//"):
        url = "/"
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + extra


class PageError(Exception):
    """An error page: HTTP status and a message for the person at the screen."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class LoginNeeded(Exception):
    """No live session: a GET goes to the login page, anything else is refused."""


async def read_form(request: Request):
    """The url-encoded form of a POST as {name: value} (the last value of a repeated name is
    kept in `name`, all of them in `name[]`); 413 when larger than MAX_FORM."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise PageError(413, "the form is too large")
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                       max_num_fields=2000)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "the form could not be read") from None
    out = {}
    for k, v in pairs:
        out[k] = v
        out.setdefault(k + "[]", []).append(v)
    return out


FormData = Annotated[dict, Depends(read_form)]  # a POST handler's parsed form
