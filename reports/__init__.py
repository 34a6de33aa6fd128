"""The verification report: figures (matplotlib), tables, LaTeX."""
from .report import ReportResult, write_report
