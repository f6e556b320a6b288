"""Fleet distribution (DESIGN.md "Fleet", docs/FLEET.md): bundles published to a TUF repository
(repository.py, publishing.py), store devices updating themselves through python-tuf's client with
staged rollouts (agent.py, release.py), their reports and the rollout control read from them
(reports.py). python-tuf is imported only inside the functions that use it.
"""
