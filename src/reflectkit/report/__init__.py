"""The self-contained HTML run report: ``reflectkit report RUN_DIR -o report.html``."""
