"""The lakehouse SQL engine (planned in issue 3). Today it hosts the ``lakehouse`` CLI."""
