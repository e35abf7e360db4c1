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
