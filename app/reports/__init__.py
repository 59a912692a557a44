"""Reports: how the team is doing, from the tallies and openings kept at write time (app/tallies).

- service: every figure the Reports page shows, for a range, filters and who may see what.
- business: seconds between two instants counted in business hours only.
- charts: the page's inline SVG charts, drawn here.
- rebuild: `flask --app app rebuild-reports` recomputes the tallies and openings from stored
  messages and events.
- events_export: the events export (CSV and XLSX).
"""
