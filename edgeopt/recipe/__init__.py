"""``edgeopt run``: the whole chain from one recipe file (DESIGN.md "Recipes").

``source`` reads the YAML with each key's line, ``configs`` makes one typed config per step from
its command's Python API, ``recipe`` validates the whole file before any work, ``cache`` keys and
stores each step's output by content, ``runner`` runs the steps, ``measure`` times and scores
every variant side by side, ``report`` writes OUT/report.json and report.html.
"""
