"""asr-workbook helpers: the tested logic behind the course notebooks.

Importing the package is cheap (no torch); each module imports what it needs.
"""

__version__ = "0.1.0"
