"""Object storage on a real S3 server on loopback (moto_server, see conftest.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from s3server import bucket, s3_client, s3_db, s3_env, s3_server  # noqa: F401 (fixtures)


def test_server_rejects_a_second_conditional_put(s3_client, bucket):
    """Lance's commits and lodevec's lease rely on it: If-None-Match: * creates once."""
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3_client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"
