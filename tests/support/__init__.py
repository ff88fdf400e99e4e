"""Helpers the tests import; the fixtures built on them live in the conftest.py beside this package.

- services: PostgreSQL, Redis and test tools present or not (skip, or fail in CI), fresh
  databases, the process's cached settings and adapters forgotten.
- aws: throwaway credentials for moto and boto3 client options.
- api: players signed up, videos uploaded and published, files downloaded, over a client.
- backend: what the configured backend holds (its storage, its queued jobs, a processed video).
- servers: `anb serve` and other servers in a subprocess: a free port, their environment,
  waiting for them to answer.
- cloudformation: a CloudFormation template read and navigated (resources, refs, `Fn::Sub`).
- ec2: the EC2 deployment in ec2/: its files, launch template user-data, systemd units,
  stub commands for its shell scripts.
- lock: uv.lock's versions.
"""
