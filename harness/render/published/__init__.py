"""The published site (``trainmark publish``): static pages that work from disk, in the spirit
of asv's published pages. ``build.publish`` decides what to rebuild, ``payloads`` what each page
shows, ``files`` writes pages, scripts and data; ``templates/`` and ``static/`` are the pages
and their scripts (docs/guides/publish.md shows them)."""
