"""Model optimizations: passes that take a model (and data) and return a smaller / faster one."""
