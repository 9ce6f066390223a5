output "bucket_name" {
  description = "S3 bucket for models, audit and backups (Helm: objectStore.bucket)."
  value       = module.object_store.bucket_name
}

output "object_store_url" {
  description = "OBJECT_STORE_URL for Aegis."
  value       = "s3://${module.object_store.bucket_name}/${local.object_prefix}"
}

output "kms_key_arn" {
  description = "KMS key encrypting the bucket."
  value       = module.object_store.kms_key_arn
}

output "database_url" {
  description = "DATABASE_URL (Helm: database.url; pass it with --set-file, never commit it)."
  value       = module.postgres.database_url
  sensitive   = true
}

output "backend_role_arn" {
  description = "IRSA role of ServiceAccount aegis-backend (Helm: cloud.aws.backendRoleArn)."
  value       = one(module.backend_role[*].role_arn)
}

output "engine_role_arn" {
  description = "IRSA role of ServiceAccount aegis-ai-engine (Helm: cloud.aws.engineRoleArn)."
  value       = one(module.engine_role[*].role_arn)
}

output "backup_role_arn" {
  description = "IRSA role of ServiceAccount aegis-db-backup (k8s/jobs/: annotate it with this)."
  value       = one(module.backup_role[*].role_arn)
}

output "verifier_role_arn" {
  description = "Role for GitHub Actions (secret AWS_ROLE_TO_ASSUME of the verifier workflow)."
  value       = one(module.verifier_role[*].role_arn)
}

output "region" {
  description = "AWS region (GitHub secret AWS_REGION)."
  value       = var.region
}
