"""media-api: Uploads to S3, jan_<snowflake> ids, presigned URLs and placeholder resolution."""
