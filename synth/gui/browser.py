"""One headless Chromium per worker (Playwright, Debian's chromium), reused across pages; a page that hangs or
crashes its tab costs its own timeout, then the tab's context is thrown away (the browser too if it stops
answering) and the next page gets a fresh one.

Playwright runs on its own event loop in a background thread, so a page whose script never returns cannot block
the caller: every wait is bounded by the page's budget (`asyncio.wait_for`), and the caller's own wait is too.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
_CLOSE_S = 5.0  # closing a context or a browser that does not answer within this is given up on
_LAUNCH_S = 60.0  # starting Chromium (a loaded machine can be slow; a page's budget starts after this)

T = TypeVar("T")


class PageError(RuntimeError):
    """A page that could not be rendered: `reason` is short and machine-readable (page_timeout, page_crashed, …)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int
    mobile: bool = False
    scale: float = 1.0  # device scale factor: screenshots are width·scale × height·scale pixels


@dataclass
class Shot:
    """One rendered viewport of a page: the PNG, what `extract` returned and the page title."""

    viewport: Viewport
    png: bytes
    extracted: Any
    title: str


@dataclass
class _Tab:
    context: Any
    page: Any
    crashed: list[bool] = field(default_factory=lambda: [False])


class Browser:
    """A lazily started Chromium shared by every page this worker renders.

    `render(url, viewports, extract_js, timeout_s)` loads `url` once per viewport (one browser context per
    viewport, kept between pages), runs `extract_js` (a JS function of one argument) in the page and takes a
    viewport screenshot. With `local_only`, every request that is not file:// or data: is aborted.
    """

    def __init__(self, executable: str = CHROMIUM, args: tuple[str, ...] = CHROMIUM_ARGS, local_only: bool = False):
        self.executable, self.args, self.local_only = executable, tuple(args), local_only
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vlmdata-browser", daemon=True)
        self._thread.start()
        self._pw: Any = None
        self._browser: Any = None
        self._tabs: dict[Viewport, _Tab] = {}
        self.restarts = 0
        atexit.register(self.close)

    # --- the caller's side (any thread) ---------------------------------------------------------------------

    def _call(self, make: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(make(), self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def render(self, url: str, viewports: list[Viewport], extract_js: str, extract_arg: Any,
               timeout_s: float, settle_ms: int = 0) -> list[Shot]:
        """Every viewport of `url` within `timeout_s` in all; raises PageError when the page fails or hangs."""
        try:
            # Starting Chromium is the worker's cost, not the page's.
            self._call(self._ensure_browser, _LAUNCH_S)
        except Exception as exc:
            raise PageError("browser_failed", f"{self.executable} did not start: {_first_line(exc)}") from exc
        deadline = time.monotonic() + timeout_s
        try:
            # The outer wait is a safety net: the coroutine bounds each of its own waits by the deadline.
            return self._call(lambda: self._render(url, viewports, extract_js, extract_arg, deadline, settle_ms),
                              timeout_s + 2 * _CLOSE_S + 5)
        except TimeoutError as exc:
            self._call(self._reset_all, 3 * _CLOSE_S)
            raise PageError("page_timeout", f"{url} did not finish within {timeout_s:g}s") from exc

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self._call(self._shutdown, 3 * _CLOSE_S)
        except Exception:  # noqa: BLE001 - closing at exit: nothing left to do about it
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- the browser thread ---------------------------------------------------------------------------------

    async def _ensure_browser(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if self._browser is not None:
            await self._reset_all()
        if self._pw is None:
            from playwright.async_api import async_playwright

            self._pw = await async_playwright().start()
        self._browser = await self._pw.chromium.launch(executable_path=self.executable, args=list(self.args),
                                                       headless=True)
        return self._browser

    async def _tab(self, vp: Viewport) -> _Tab:
        tab = self._tabs.get(vp)
        if tab is not None and not tab.crashed[0] and not tab.page.is_closed():
            return tab
        if tab is not None:
            await self._drop_tab(vp)
        browser = await self._ensure_browser()
        context = await browser.new_context(
            viewport={"width": vp.width, "height": vp.height}, device_scale_factor=vp.scale, is_mobile=vp.mobile,
            has_touch=vp.mobile, java_script_enabled=True, service_workers="block", reduced_motion="reduce")
        if self.local_only:
            await context.route("**/*", _local_only)
        page = await context.new_page()
        tab = _Tab(context, page)
        page.on("crash", lambda _page: tab.crashed.__setitem__(0, True))
        self._tabs[vp] = tab
        return tab

    async def _drop_tab(self, vp: Viewport) -> None:
        tab = self._tabs.pop(vp, None)
        if tab is None:
            return
        try:
            await asyncio.wait_for(tab.context.close(), _CLOSE_S)
        except Exception:  # noqa: BLE001 - a context that will not close: the whole browser goes
            await self._kill_browser()

    async def _kill_browser(self) -> None:
        browser, self._browser = self._browser, None
        self._tabs.clear()
        if browser is not None:
            self.restarts += 1
            try:
                await asyncio.wait_for(browser.close(), _CLOSE_S)
            except Exception:  # noqa: BLE001 - the driver kills the process when the connection goes
                pass

    async def _reset_all(self) -> None:
        for vp in list(self._tabs):
            await self._drop_tab(vp)

    async def _shutdown(self) -> None:
        await self._reset_all()
        await self._kill_browser()
        if self._pw is not None:
            pw, self._pw = self._pw, None
            try:
                await asyncio.wait_for(pw.stop(), _CLOSE_S)
            except Exception:  # noqa: BLE001
                pass

    async def _render(self, url: str, viewports: list[Viewport], extract_js: str, extract_arg: Any,
                      deadline: float, settle_ms: int) -> list[Shot]:
        shots = []
        for vp in viewports:
            try:
                shots.append(await self._render_one(url, vp, extract_js, extract_arg, deadline, settle_ms))
            except PageError:
                await self._drop_tab(vp)
                raise
            except Exception as exc:
                await self._drop_tab(vp)
                if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
                    raise PageError("page_timeout", f"{url} ({vp.name}): {_first_line(exc)}") from exc
                raise PageError("page_failed", f"{url} ({vp.name}): {type(exc).__name__}: {_first_line(exc)}") from exc
        return shots

    async def _render_one(self, url: str, vp: Viewport, extract_js: str, extract_arg: Any, deadline: float,
                          settle_ms: int) -> Shot:
        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("page budget spent")
            return remaining

        tab = await self._tab(vp)
        page = tab.page
        response = await asyncio.wait_for(page.goto(url, wait_until="load", timeout=left() * 1000), left())
        if response is not None and response.status >= 400:
            raise PageError("page_http_error", f"{url}: HTTP {response.status}")
        await asyncio.wait_for(page.evaluate("document.fonts ? document.fonts.ready.then(() => true) : true"), left())
        if settle_ms:
            await asyncio.sleep(min(settle_ms / 1000, left()))
        if tab.crashed[0]:
            raise PageError("page_crashed", f"{url} ({vp.name})")
        extracted = await asyncio.wait_for(page.evaluate(extract_js, extract_arg), left())
        title = await asyncio.wait_for(page.title(), left())
        png = await asyncio.wait_for(
            page.screenshot(type="png", animations="disabled", caret="hide", timeout=left() * 1000), left())
        if tab.crashed[0]:
            raise PageError("page_crashed", f"{url} ({vp.name})")
        return Shot(vp, png, extracted, title)


async def _local_only(route: Any) -> None:
    if route.request.url.startswith(("file:", "data:", "about:")):
        await route.continue_()
    else:
        await route.abort("blockedbyclient")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
