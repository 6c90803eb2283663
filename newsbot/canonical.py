"""The same article under different URLs: one canonical form, and the key merging uses.

A story reaches a chat from several sources under URLs that differ only in spelling:
``HTTPS://www.Example.org:443/a/?utm_source=rss#top`` and ``https://example.org/a`` are
one article. ``canonical_url`` writes every such spelling the same way, changing only what
never changes which page a server returns (RFC 3986's safe normalisations, plus the
tracking parameters below); ``article_key`` is what the merge step compares. Pure functions.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

# Query parameters that say how a reader got to an article, never which article it is.
# A name matches case-insensitively; prefixes match any name that starts with them.
TRACKING_PREFIXES = (
    "utm_",  # Google Analytics / Urchin campaigns: utm_source, utm_medium, utm_campaign, …
    "mtm_",  # Matomo campaigns: mtm_source, mtm_campaign, …
)
TRACKING_PARAMETERS = frozenset(
    {
        # Ad-click identifiers: Facebook, Google Ads (gclid, gclsrc, dclid, gbraid, wbraid),
        # Microsoft Ads, Yandex, X/Twitter, TikTok, LinkedIn, Reddit Ads, Google Shopping.
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "ttclid",
        "li_fat_id",
        "rdt_cid",
        "srsltid",
        # Google Analytics cross-domain linker.
        "_ga",
        "_gl",
        # Share-link identifiers added by apps (Instagram).
        "igshid",
        # Newsletter tools: Mailchimp, HubSpot, Marketo, Vero, Omeda.
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "__hstc",
        "__hssc",
        "__hsfp",
        "hsctatracking",
        "mkt_tok",
        "vero_id",
        "vero_conv",
        "oly_enc_id",
        "oly_anon_id",
        # Piwik's (Matomo's older) campaign names.
        "pk_campaign",
        "pk_kwd",
        "pk_source",
        "pk_medium",
        "pk_content",
        # Referrer tags: the generic ref, and X/Twitter's ref_src and ref_url.
        "ref",
        "ref_src",
        "ref_url",
    }
)

# Hosts of Reddit itself: a post "linking" there links to Reddit, not to an article.
REDDIT_HOSTS = ("reddit.com", "redd.it")

DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 unreserved characters: percent-encoding one of them changes nothing, so the
# canonical form decodes them (section 6.2.2.2); every other escape is only uppercased.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def canonical_url(url: str) -> str:
    """Write an http(s) URL in its canonical form; anything else comes back stripped."""
    text = url.strip()
    try:
        return _canonical(text) or text
    except (ValueError, UnicodeError):  # junk is not an error here: it keys as itself
        return text


def article_key(item_link: str, linked_url: str | None = None) -> str:
    """What makes two items the same article: the URL a link post points to, or its own."""
    if linked_url is not None:
        linked = canonical_url(linked_url)
        if is_web_url(linked) and not _is_reddit(linked):
            return linked
    return canonical_url(item_link)


def is_web_url(url: str) -> bool:
    """Whether a (canonical) URL is an http(s) address with a host."""
    return url.startswith(("http://", "https://")) and len(url.split("/", 3)[2]) > 0


def _canonical(text: str) -> str | None:
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = _host(parts.hostname)
    if host is None:
        return None
    port = parts.port  # raises ValueError for a port that is not a number in range
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = _escapes(parts.path).rstrip("/") or "/"
    query = "&".join(
        _escapes(field) for field in parts.query.split("&") if field and not _is_tracking(field)
    )
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _host(hostname: str) -> str | None:
    """The host lowercased, in punycode, without ``www.`` or a trailing dot; None if junk."""
    if ":" in hostname:  # urlsplit gives IPv6 literals without their brackets
        return f"[{ipaddress.IPv6Address(hostname).compressed}]"
    host = hostname.lower().rstrip(".")
    if not host.isascii():
        # Python's IDNA codec turns each label into its xn-- form, so an IDN host keys
        # the same whether a source wrote it in Unicode or in punycode.
        host = host.encode("idna").decode("ascii").lower()
    host = host.removeprefix("www.")
    return host if _HOST.fullmatch(host) else None


def _is_tracking(field: str) -> bool:
    name = urllib.parse.unquote_plus(field.partition("=")[0]).lower()
    return name in TRACKING_PARAMETERS or name.startswith(TRACKING_PREFIXES)


def _is_reddit(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return any(host == name or host.endswith("." + name) for name in REDDIT_HOSTS)


def _escapes(text: str) -> str:
    """Percent-encoding normalised: unreserved characters decoded, other escapes uppercased.

    Characters a URL may not carry raw (non-ASCII, spaces, controls) are encoded as UTF-8,
    as a browser sends them, and a ``%`` that starts no escape becomes ``%25``, so the
    result reads the same when normalised again.
    """
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%" and _is_escape(text, index):
            pair = text[index + 1 : index + 3]
            decoded = chr(int(pair, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + pair.upper())
            index += 3
            continue
        if char == "%":
            out.append("%25")
        elif "!" <= char <= "~":
            out.append(char)
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
        index += 1
    return "".join(out)


def _is_escape(text: str, index: int) -> bool:
    return index + 2 < len(text) and text[index + 1] in _HEX and text[index + 2] in _HEX
