"""The built-in sources as plug-in objects: the three original readers, and count, prompts, html, text."""

from __future__ import annotations

from pipelines.readers.base import ModuleSource
from pipelines.readers.count import CountSource
from pipelines.readers.folder import FolderOptions
from pipelines.readers.html import HtmlSource
from pipelines.readers.prompts import PromptSource
from pipelines.readers.text import TextSource

FOLDER = ModuleSource("folder", "pipelines.readers.folder", options=FolderOptions)
WEBDATASET = ModuleSource("webdataset", "pipelines.readers.webdataset")
PARQUET = ModuleSource("parquet", "pipelines.readers.parquet")
COUNT = CountSource()
PROMPTS = PromptSource()
HTML = HtmlSource()
TEXT = TextSource()
