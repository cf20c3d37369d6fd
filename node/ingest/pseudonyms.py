"""Pseudonymizing identifiers inside Spark, with the same normalization as the online path.

The subject key travels to Spark's Python workers inside the UDF's closure: on a cluster, the
executors are inside the institution's trust boundary (docs/security.md). It is never put in a
SQL expression, where it would show in query plans, logs and the Spark UI.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column as SparkColumn
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fedcredit.errors import MalformedIdentifierError
from mpc.pseudonym import SubjectKey, pseudonymize

#: pseudonym: 32 bytes, null when the identifier does not normalize.
RESULT_TYPE = T.BinaryType()


def pseudonym_column(key: SubjectKey, identifier: SparkColumn, id_type: SparkColumn
                     ) -> SparkColumn:
    """HMAC pseudonym of each (identifier, type); null where the identifier is malformed."""
    secret = key.secret

    @F.pandas_udf(RESULT_TYPE)  # type: ignore[call-overload]
    def _pseudonyms(identifiers: pd.Series, types: pd.Series) -> pd.Series:
        subject_key = SubjectKey(secret)
        out: list[bytes | None] = []
        for raw, kind in zip(identifiers, types, strict=True):
            if raw is None or kind is None or (isinstance(raw, float) and pd.isna(raw)):
                out.append(None)
                continue
            try:
                out.append(pseudonymize(subject_key, kind, raw).value)
            except MalformedIdentifierError:
                out.append(None)
        return pd.Series(out, dtype=object)

    return _pseudonyms(identifier, id_type)
