# The status page's browser test (tests/integration/test_dashboard_browser.py): Debian's chromium
# driven by playwright-core from npm. Included by the root Makefile (`include mk/browser.mk`).
#
# playwright-core is pinned here and installed into .tools/browser (never `npx playwright
# install`: it would download a browser build of its own). chromium comes from Debian, installed
# only when /usr/bin/chromium is missing and we may (root with apt-get, as on CI); otherwise the
# browser test skips and says why.

BROWSER_TOOLS ?= .tools/browser
PLAYWRIGHT_CORE_VERSION := 1.65.1
CHROMIUM ?= /usr/bin/chromium

$(BROWSER_TOOLS)/.installed: mk/browser.mk
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "==> installing Debian's chromium for the browser test (apt-get install chromium)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		else \
			echo "note: no $(CHROMIUM) and no root apt-get: the browser test will skip (apt-get install chromium)"; \
		fi; \
	fi
	@# Without npm the browser test skips (no node); the stamp is left out so that it retries.
	@if ! command -v npm >/dev/null; then \
		echo "note: no npm: the browser test will skip (install nodejs and npm)"; \
	else \
		echo "==> installing playwright-core $(PLAYWRIGHT_CORE_VERSION) into $(BROWSER_TOOLS)"; \
		mkdir -p $(BROWSER_TOOLS) && \
		npm install --prefix $(BROWSER_TOOLS) --save-exact --no-audit --no-fund --loglevel=error \
			playwright-core@$(PLAYWRIGHT_CORE_VERSION) && \
		touch $@; \
	fi

.PHONY: browser-tools
browser-tools: $(BROWSER_TOOLS)/.installed ## install the status page's browser test tools (.tools/browser, chromium)
