"""Export a loaded model to deployable artifacts, verify each, and write OUT/manifest.json."""
