"""Logs, in three parts: how Datanectar's own processes log (:mod:`~nectar.logs.format`), a task's output sent
into its two log files (:mod:`~nectar.logs.capture`), and where those files are found (:mod:`~nectar.logs.files`)."""
