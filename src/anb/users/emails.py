"""One form of an e-mail address, for sign-up and login alike, and the look-alike rule.

Policy: an address is compared in NFKC (compatibility look-alikes such as full-width
letters are the plain letters), with its domain in Unicode (an IDNA `xn--` form is the same
domain) and in lower case. A sign-up whose local part mixes the Latin alphabet with Cyrillic
or Greek letters (`p\u0430ypal`, with a Cyrillic `a`) is refused: that mix is how addresses that
read like someone else's are made, and no real mailbox needs it. Other scripts, alone or
mixed with each other (Japanese mixes three), are welcome.
"""

from __future__ import annotations

import unicodedata
from contextlib import suppress

from email_validator import EmailNotValidError, validate_email

CONFUSABLE_WITH_LATIN = {"CYRILLIC", "GREEK"}


def normalized_email(address: str) -> str:
    """The form stored at sign-up and looked up at login. An address that is not valid is
    returned folded the same way (it then matches no account)."""
    folded = unicodedata.normalize("NFKC", address.strip())
    with suppress(EmailNotValidError):
        folded = validate_email(folded, check_deliverability=False).normalized
    return folded.lower()


def mixes_confusable_scripts(address: str) -> bool:
    """Whether the local part has Latin letters beside Cyrillic or Greek ones."""
    local_part = unicodedata.normalize("NFKC", address).rpartition("@")[0]
    scripts = {unicodedata.name(char, "").split(" ")[0] for char in local_part if char.isalpha()}
    return "LATIN" in scripts and bool(scripts & CONFUSABLE_WITH_LATIN)
