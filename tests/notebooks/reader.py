"""Script task: reads an upstream task value and a widget, sets a value, exits with a value."""
import sys

from nbjobs.kernel import dbutils

rows = dbutils.jobs.taskValues.get("ingest", "rows")
print(f"argv={sys.argv[1:]}")
print(f"rows={rows!r} type={type(rows).__name__}")
print(f"widget env={dbutils.widgets.get('env')}")
dbutils.jobs.taskValues.set("total", rows + 1)
dbutils.jobs.taskValues.set("args", sys.argv[1:])
dbutils.notebook.exit("script done")
print("not reached")
