#!/usr/bin/env python3
"""A BigQuery agent that uses the standard google-cloud-bigquery client, unmodified.

It changes nothing but the client's API endpoint (the jitgate gateway) and its token
(the agent's own OIDC token), exactly as an agent author would. Used by `make run`
and the e2e tests; prints the result as one JSON document on stdout.

Examples:
  bq_query.py --endpoint http://127.0.0.1:10000 --project jitgate-demo \
      --token "$(bin/jitgate dev token --agent demo)" "SELECT 1 AS x"
  bq_query.py --mode job --page-size 5 ... "SELECT * FROM crm.customers"
"""
import argparse
import json
import sys
import time

from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPICallError
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.oauth2.credentials import Credentials


def _isna(v) -> bool:
    """pandas' missing values (NaN, NA, NaT) as None; arrays and other values as they are."""
    try:
        import pandas
        r = pandas.isna(v)
        return bool(r) if isinstance(r, bool) or getattr(r, "ndim", 1) == 0 else False
    except (ImportError, TypeError, ValueError):
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sql", help="the GoogleSQL query to run")
    p.add_argument("--endpoint", required=True, help="the gateway, e.g. http://127.0.0.1:10000")
    p.add_argument("--project", required=True, help="the BigQuery project to bill and query")
    p.add_argument("--token", default="", help="the agent's bearer token (empty: send none)")
    p.add_argument("--mode", choices=["query_and_wait", "job", "dataframe", "list_rows"], default="query_and_wait",
                   help="query_and_wait: jobs.query (DB-API, most agent tools); "
                        "job: jobs.insert + jobs.get + getQueryResults (client.query().result()); "
                        "dataframe: job, read with to_dataframe(create_bqstorage_client=False) "
                        "(needs pandas and db-dtypes); "
                        "list_rows: job (id e2e_result_py_<ns>), then client.list_rows of its "
                        "result table (tables.get for the schema, then tabledata.list)")
    p.add_argument("--page-size", type=int, default=None, help="rows per page (maxResults)")
    p.add_argument("--default-dataset", default=None, help="dataset for unqualified table names")
    p.add_argument("--legacy-sql", action="store_true",
                   help="send useLegacySql: true (the gateway denies legacy SQL unless a policy sets "
                        "what.legacySql, and then does not analyse it)")
    args = p.parse_args()

    creds = Credentials(token=args.token) if args.token else AnonymousCredentials()
    client = bigquery.Client(
        project=args.project,
        credentials=creds,
        client_options=ClientOptions(api_endpoint=args.endpoint),
    )
    cfg = bigquery.QueryJobConfig(use_legacy_sql=args.legacy_sql)
    if args.default_dataset:
        cfg.default_dataset = f"{args.project}.{args.default_dataset}"
    try:
        if args.mode == "query_and_wait":
            rows = client.query_and_wait(args.sql, job_config=cfg, page_size=args.page_size)
        elif args.mode == "list_rows":
            job = client.query(args.sql, job_config=cfg, job_id=f"e2e_result_py_{time.time_ns()}")
            job.result()
            rows = client.list_rows(job.destination, page_size=args.page_size)
        else:
            rows = client.query(args.sql, job_config=cfg).result(page_size=args.page_size)
        out = {
            "columns": [f.name for f in rows.schema],
            "types": [f.field_type for f in rows.schema],
        }
        if args.mode == "dataframe":
            # The Storage Read API is gRPC to another host: it would bypass the gateway.
            df = rows.to_dataframe(create_bqstorage_client=False)
            out["rows"] = [[None if _isna(v) else v for v in r] for r in df.itertuples(index=False, name=None)]
        else:
            out["rows"] = [list(r.values()) for r in rows]
    except GoogleAPICallError as e:
        json.dump({"error": {"code": e.code, "message": e.message,
                             "reason": (e.errors[0].get("reason") if e.errors else None)}}, sys.stdout)
        print()
        return 3
    json.dump(out, sys.stdout, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
