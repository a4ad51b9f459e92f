"""Prefect flows: wiring of tasks only.

A deployment's flow runs start in processes of their own (Prefect's runner imports the flow), where
the CLI's ``quiet()`` never ran: MLflow's advice to log an input example and the like were printed
into `tsfm deploy`'s output. Importing a flow quiets its process too.
"""

from infra.quiet import quiet

quiet()
