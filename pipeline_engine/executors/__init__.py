"""How an attempt runs. ``base`` is the contract every executor keeps (and the outcome of an
attempt); ``local`` runs attempts as processes of this host, on a pool of threads. Only
executors (and ``executor``, the process module ``local`` uses) touch an attempt's processes."""
