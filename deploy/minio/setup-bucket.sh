#!/bin/sh
# One-shot: the videos bucket (private), and an app identity that may touch that bucket only,
# so the API and workers never hold MinIO's root credentials. Safe to rerun.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is required (deploy/infra.env)}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is required (deploy/infra.env)}"
: "${S3_ACCESS_KEY:?S3_ACCESS_KEY is required (deploy/prod.env)}"
: "${S3_SECRET_KEY:?S3_SECRET_KEY is required (deploy/prod.env)}"
BUCKET="${S3_BUCKET:-videos}"
POLICY=videos-app

mc alias set store http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "store/$BUCKET"
# Objects are reached through presigned URLs or a CDN only, never anonymously.
mc anonymous set none "store/$BUCKET"
# Unfinished multipart uploads: MinIO removes them after MINIO_API_STALE_UPLOADS_EXPIRY (24h,
# docker-compose.yml); it drops an AbortIncompleteMultipartUpload lifecycle rule. On AWS S3, R2
# or GCS give the bucket that rule instead (devstack.seaweed.abort_incomplete_uploads_rule):
#   aws s3api put-bucket-lifecycle-configuration --bucket "$BUCKET" --lifecycle-configuration \
#     '{"Rules":[{"ID":"abort-incomplete-uploads","Status":"Enabled","Filter":{"Prefix":""},
#       "AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}]}'

policy_file="$(mktemp)"
cat > "$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$BUCKET/*"]}
  ]
}
JSON
mc admin policy create store "$POLICY" "$policy_file"
rm -f "$policy_file"
mc admin user add store "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >/dev/null
if ! mc admin user info store "$S3_ACCESS_KEY" | grep -q "$POLICY"; then
    mc admin policy attach store "$POLICY" --user "$S3_ACCESS_KEY"
fi
echo "bucket $BUCKET ready; app identity limited to it"
