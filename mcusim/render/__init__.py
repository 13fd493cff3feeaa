"""Renderers: terminal tables (console) and, later, JSON, plots and profile formats."""
