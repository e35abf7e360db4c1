"""Headers on every response, whether Flask or gunicorn writes it.

JSON is never to be sniffed as HTML, framed, cached or given a referrer, and a browser that
renders it anyway may load nothing.
"""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# The status page (/dashboard) is HTML with its own script and style: its CSP allows exactly
# those, from this origin, and nothing inline. Its forms' posts carry their Origin (under
# no-referrer a browser sends "Origin: null"); other sites still get no referrer.
PAGE_SECURITY_HEADERS = {
    **SECURITY_HEADERS,
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
}

# Over TLS only (a browser ignores it on plain http, and it must not pin a local http API): for a
# year, this host and its subdomains are https only.
HSTS = "max-age=31536000; includeSubDomains"
