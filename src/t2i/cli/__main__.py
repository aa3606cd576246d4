from t2i.cli import entry

entry()
