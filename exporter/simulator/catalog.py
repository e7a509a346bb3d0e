"""What the simulated files are called and how their conversions fail.

Plain data, kept apart from the timeline logic so the world module reads as a schedule.
"""

from __future__ import annotations

from typing import NamedTuple

METHODS = ("accuracy-optimized", "speed-optimized")

# A name is "<topic>-<kind>[-<period>].<extension>": enough variety for a dashboard to look real.
TOPICS = (
    "quarterly", "annual", "security", "onboarding", "pricing", "vendor", "compliance",
    "incident", "research", "customer", "benefits", "audit", "product", "support",
)
KINDS = (
    "report", "handbook", "contract", "minutes", "policy", "proposal", "summary",
    "playbook", "invoice", "faq", "roadmap", "guidelines", "review", "notes",
)
PERIODS = ("", "", "", "2025-q3", "2025-q4", "2026-01", "v2", "final", "draft")
# Repeated entries weight the draw: most uploads are PDFs.
EXTENSIONS = ("pdf", "pdf", "pdf", "pdf", "pdf", "docx", "docx", "docx", "pptx", "md", "html")


class ConversionError(NamedTuple):
    """A failure as the API reports it; `extensions` limits it to files it can happen to."""

    error_message: str
    suggested_fix: str
    extensions: tuple[str, ...] | None = None


ERRORS = (
    ConversionError(
        "PDF is encrypted",
        "Remove the password protection and upload the file again",
        ("pdf",),
    ),
    ConversionError(
        "OCR failed: scanned pages are below 150 DPI",
        "Rescan the document at 300 DPI or higher and upload it again",
        ("pdf",),
    ),
    ConversionError(
        "File is empty (0 bytes)",
        "Check the source file and upload it again",
    ),
    ConversionError(
        "File is corrupted: the document structure could not be read",
        "Open the file in its editor, save it again and upload the new copy",
    ),
    ConversionError(
        "Conversion timed out after 900 seconds",
        "Split the document into smaller files or use the speed-optimized method",
    ),
    ConversionError(
        "Document contains embedded objects that cannot be converted",
        "Remove embedded objects or export the document as PDF",
        ("docx", "pptx"),
    ),
    ConversionError(
        "Document exceeds the 1000-page limit",
        "Split the document into parts of at most 1000 pages",
        ("pdf", "docx"),
    ),
)


def errors_for(extension: str) -> tuple[ConversionError, ...]:
    """The failures that fit a file with this extension (never empty: some fit any file)."""
    return tuple(e for e in ERRORS if e.extensions is None or extension in e.extensions)
