"""One headless Chromium per worker (Playwright, Debian's chromium), reused across pages; a page that hangs or
crashes its tab costs its own timeout, then the tab's context is thrown away (the browser too if it stops
answering) and the next page gets a fresh one.

Playwright runs on its own event loop in a background thread, so a page whose script never returns cannot block
the caller: every wait is bounded by the page's budget (`asyncio.wait_for`), and the caller's own wait is too.

Confinement (every request of every tab goes through one route handler, `_Guard.decide`):
- file:// loads only under the page's folders (`file_roots`: the input folder the page was read from, else the
  page file's own folder; real paths, so `..` and symlinks that lead out are outside), never through a dot folder
  or dot file below them (.git, .ssh, .env); the page itself always loads. Everything else file:// is aborted.
- A frame (iframe, object, embed) whose document is a forbidden file, and a main frame that navigates away from
  the page (script, meta refresh, redirect; a file page may not leave its own file, a web page may go on to other
  http(s) pages but nowhere else), make the page `PageBlocked` (`blocked_file` / `navigated_away`): never
  screenshots. So is a page whose final URL is not the page. Forbidden subresources (images, scripts, styles,
  fetch) are only aborted: Debian's python3-doc links jQuery out of its folder, and the page renders as before.
- http(s) pages never get file:// (no roots, and Chromium refuses it to web origins anyway); `local_only` also
  aborts every http(s) request. Popups are closed unrendered, downloads refused, view-source:, chrome:// and
  data: top-level navigations are Chromium's to refuse (the final-URL check is the backstop).
- Between pages a tab's guard refuses everything, so nothing a page left running (a timer that navigates, a
  slow request) gets through or is counted against the next page.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

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
        self.reason, self.detail = reason, detail


class PageBlocked(PageError):
    """A page that tried to leave its confinement (reason navigated_away | blocked_file, detail the URL): a verdict
    on the page, not a failure of the browser."""


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


_URL_IN_REASON = 200  # a data: URL can be megabytes; reasons carry its start


class _Guard:
    """What one page may load (see the module docstring); `blocked` collects (reason, url) of what made it leave."""

    def __init__(self, url: str, file_roots: Iterable[str], local_only: bool):
        self.url, self.local_only = url, local_only
        self.scheme = _scheme(url)
        self.web = self.scheme in ("http", "https")
        page_path = file_path(url) if self.scheme == "file" else None
        self.page_path = os.path.realpath(page_path) if page_path else None
        self.roots = tuple(Path(os.path.realpath(r)) for r in file_roots)
        self.blocked: list[tuple[str, str]] = []

    def file_allowed(self, url: str) -> bool:
        path = file_path(url)
        if path is None:
            return False
        real = os.path.realpath(path)
        return real == self.page_path or inside(real, self.roots)

    def is_page(self, url: str) -> bool:
        """Whether `url` is the page itself (a file: the same real file, any query or fragment; else the same URL
        without its fragment)."""
        if self.page_path is not None:
            path = file_path(url) if _scheme(url) == "file" else None
            return path is not None and os.path.realpath(path) == self.page_path
        return url.split("#", 1)[0] == self.url.split("#", 1)[0]

    def stays(self, url: str) -> bool:
        """Whether a main frame showing `url` still shows this page (a web page may go on to other web pages)."""
        return self.is_page(url) or (self.web and _scheme(url) in ("http", "https"))

    def decide(self, url: str, navigation: bool, frame: str) -> tuple[bool, str | None]:
        """(continue?, (reason, url) to record or None) for a request; `frame`: main | sub | other (a popup)."""
        scheme = _scheme(url)
        web = scheme in ("http", "https")
        if scheme == "file":
            allowed = self.file_allowed(url)
        elif web:
            allowed = not self.local_only
        else:
            allowed = scheme in ("data", "blob", "about")
        if not navigation:
            return allowed, None
        if frame == "other":
            return False, None
        if frame == "main" and not self.stays(url):
            return False, "navigated_away"
        if frame == "sub" and scheme == "file" and not allowed:
            return False, "blocked_file"
        return allowed, None


def inside(real: str, roots: Iterable[Path]) -> bool:
    """Whether the real path `real` is one of `roots` (real paths) or below one, through no dot folder or file."""
    path = Path(real)
    return any(path.is_relative_to(root) and not any(part.startswith(".") for part in path.relative_to(root).parts)
               for root in roots)


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def file_path(url: str) -> str | None:
    """The local path of a file:// URL (percent-decoded); None for another host."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        return None
    return url2pathname(parts.path)


@dataclass
class _Tab:
    context: Any
    page: Any
    crashed: list[bool] = field(default_factory=lambda: [False])
    guard: _Guard | None = None  # None: between pages, every request is aborted


class Browser:
    """A lazily started Chromium shared by every page this worker renders.

    `render(url, viewports, extract_js, timeout_s)` loads `url` once per viewport (one browser context per
    viewport, kept between pages), runs `extract_js` (a JS function of one argument) in the page and takes a
    viewport screenshot. File access is confined (module docstring); with `local_only`, every http(s) request is
    aborted too.
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
               timeout_s: float, settle_ms: int = 0, file_roots: Iterable[str] | None = None) -> list[Shot]:
        """Every viewport of `url` within `timeout_s` in all; raises PageError when the page fails or hangs,
        PageBlocked when it leaves its confinement. `file_roots`: the folders whose files a file page may load
        (default: the page's own folder)."""
        if file_roots is None:
            path = file_path(url) if _scheme(url) == "file" else None
            file_roots = [os.path.dirname(path)] if path else []
        roots = tuple(file_roots)
        try:
            # Starting Chromium is the worker's cost, not the page's.
            self._call(self._ensure_browser, _LAUNCH_S)
        except Exception as exc:
            raise PageError("browser_failed", f"{self.executable} did not start: {_first_line(exc)}") from exc
        deadline = time.monotonic() + timeout_s
        try:
            # The outer wait is a safety net: the coroutine bounds each of its own waits by the deadline.
            return self._call(lambda: self._render(url, viewports, extract_js, extract_arg, deadline, settle_ms,
                                                   roots), timeout_s + 3 * _CLOSE_S + 5)
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
            has_touch=vp.mobile, java_script_enabled=True, service_workers="block", reduced_motion="reduce",
            accept_downloads=False)
        tab = _Tab(context, None)

        async def route(route: Any) -> None:
            request = route.request
            try:
                allowed, blocked = _decide(tab, request)
            except Exception:  # noqa: BLE001 - a request we cannot judge is refused
                allowed, blocked = False, None
            if blocked and tab.guard is not None:
                tab.guard.blocked.append((blocked, request.url))
            try:
                await (route.continue_() if allowed else route.abort("blockedbyclient"))
            except Exception:  # noqa: BLE001 - the page or its frame went away meanwhile
                pass

        await context.route("**/*", route)
        tab.page = page = await context.new_page()
        page.on("crash", lambda _page: tab.crashed.__setitem__(0, True))
        page.on("popup", lambda popup: asyncio.ensure_future(_close_quietly(popup)))
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
                      deadline: float, settle_ms: int, roots: tuple[str, ...]) -> list[Shot]:
        shots = []
        for vp in viewports:
            try:
                shots.append(await self._render_one(url, vp, extract_js, extract_arg, deadline, settle_ms, roots))
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
                          settle_ms: int, roots: tuple[str, ...]) -> Shot:
        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("page budget spent")
            return remaining

        tab = await self._tab(vp)
        guard = tab.guard = _Guard(url, roots, self.local_only)
        try:
            return await self._shoot(tab, url, vp, extract_js, extract_arg, settle_ms, left)
        except Exception:
            # A page blocked mid-way (an aborted navigation destroys the context the script ran in): the verdict.
            if guard.blocked:
                _check_confined(guard, "")
            raise
        finally:
            tab.guard = None  # until the next page: whatever this one left running is refused, and not counted

    async def _shoot(self, tab: _Tab, url: str, vp: Viewport, extract_js: str, extract_arg: Any, settle_ms: int,
                     left: Callable[[], float]) -> Shot:
        page, guard = tab.page, tab.guard
        assert guard is not None
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
        _check_confined(guard, page.url)
        return Shot(vp, png, extracted, title)


def _check_confined(guard: _Guard, final_url: str) -> None:
    """PageBlocked when the page tried to leave (a main-frame navigation first) or its main frame is elsewhere."""
    for wanted in ("navigated_away", "blocked_file"):
        for reason, url in guard.blocked:
            if reason == wanted:
                raise PageBlocked(reason, url[:_URL_IN_REASON])
    if not guard.stays(final_url):
        raise PageBlocked("navigated_away", final_url[:_URL_IN_REASON])


def _decide(tab: _Tab, request: Any) -> tuple[bool, str | None]:
    guard = tab.guard
    if guard is None:
        return False, None
    navigation = request.is_navigation_request()
    frame = "other"
    if navigation:
        try:
            owner = request.frame  # raises for a popup's first navigation (its frame does not exist yet)
        except Exception:  # noqa: BLE001
            owner = None
        if owner is not None and owner.page == tab.page:
            frame = "main" if owner.parent_frame is None else "sub"
    return guard.decide(request.url, navigation, frame)


async def _close_quietly(page: Any) -> None:
    try:
        await asyncio.wait_for(page.close(), _CLOSE_S)
    except Exception:  # noqa: BLE001 - it goes with its context
        pass


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
