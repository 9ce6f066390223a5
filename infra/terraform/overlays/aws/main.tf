# Staging infrastructure for Aegis on AWS (runbook 002 item 3):
#
#   cd infra/terraform/overlays/aws
#   terraform init
#   terraform apply -var="db_password=..."        # -var-file=staging.tfvars for the rest
#   terraform output bucket_name
#   terraform output -raw database_url            # sensitive
#
# Then install the Helm chart with these outputs (helm/values.aws.yaml says how; no template
# changes). What it makes:
#   - S3 bucket for models, audit checkpoints and backups: versioned, SSE-KMS with its own key,
#     public access blocked, TLS only; deleted or overwritten versions (pruned backups too)
#     expire after noncurrent_version_retention_days (modules/object_store);
#   - RDS PostgreSQL, encrypted, not publicly accessible (modules/postgres);
#   - with eks_oidc_provider_arn: IRSA roles for the backend (read/write under the Aegis prefix),
#     the AI engine (read only, the Aegis prefix and model_archive_prefix) and the backup and
#     restore jobs of k8s/jobs/ (read/write/delete under PREFIX/backups only) (modules/irsa_role);
#   - with github_repository: the role GitHub Actions assumes over OIDC to read staging model
#     archives for signature verification (modules/github_oidc_role).

data "aws_caller_identity" "current" {}

locals {
  prefix      = "${var.name}-${var.environment}"
  bucket_name = coalesce(var.bucket_name, "${local.prefix}-${data.aws_caller_identity.current.account_id}")
  # arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID -> the issuer host/path
  oidc_provider_host = var.eks_oidc_provider_arn == null ? "" : element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)
  object_prefix      = trim(var.object_prefix, "/")
  # BACKUP_URL of k8s/jobs/backup-cronjob.yaml: s3://BUCKET/PREFIX/backups.
  backup_prefix = "${local.object_prefix}/backups"
}

module "object_store" {
  source        = "../../modules/object_store"
  bucket_name   = local.bucket_name
  force_destroy = var.force_destroy_bucket

  noncurrent_version_retention_days = var.noncurrent_version_retention_days
}

module "postgres" {
  source                     = "../../modules/postgres"
  identifier                 = local.prefix
  password                   = var.db_password
  instance_class             = var.db_instance_class
  multi_az                   = var.db_multi_az
  deletion_protection        = var.db_deletion_protection
  skip_final_snapshot        = var.db_skip_final_snapshot
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.db_subnet_ids
  allowed_security_group_ids = var.db_allowed_security_group_ids
  allowed_cidr_blocks        = var.db_allowed_cidr_blocks
}

# --- least-privilege object store access for the two services that use it --------------------

data "aws_iam_policy_document" "backend" {
  statement {
    sid       = "ListAegisPrefix"
    actions   = ["s3:ListBucket"]
    resources = [module.object_store.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.object_prefix}/*"]
    }
  }
  statement {
    # Delete leaves a noncurrent version (versioning); DeleteObjectVersion is not granted.
    sid       = "ReadWriteAegisObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${module.object_store.bucket_arn}/${local.object_prefix}/*"]
  }
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [module.object_store.kms_key_arn]
  }
}

# The engine also reads the signed model archives where the runbook uploads them and CI verifies
# them (model_archive_prefix, default model-archives/ at the bucket root): `aegis model push --to
# s3://BUCKET/model-archives/NAME/VERSION/` records that URI and the engine fetches it from there.
data "aws_iam_policy_document" "engine" {
  statement {
    sid       = "ListAegisPrefix"
    actions   = ["s3:ListBucket"]
    resources = [module.object_store.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.object_prefix}/*", "${var.model_archive_prefix}*"]
    }
  }
  statement {
    sid     = "ReadAegisObjectsAndModelArchives"
    actions = ["s3:GetObject"]
    resources = [
      "${module.object_store.bucket_arn}/${local.object_prefix}/*",
      "${module.object_store.bucket_arn}/${var.model_archive_prefix}*",
    ]
  }
  statement {
    sid       = "DecryptWithBucketKey"
    actions   = ["kms:Decrypt"]
    resources = [module.object_store.kms_key_arn]
  }
}

# The backup CronJob and the restore Job (k8s/jobs/, ServiceAccount aegis-db-backup): write the
# encrypted artifacts, list and prune them (`aegis backup create` deletes those past
# RETENTION_DAYS), read one back to restore. Nothing outside the backups prefix.
data "aws_iam_policy_document" "backup" {
  statement {
    sid       = "ListBackups"
    actions   = ["s3:ListBucket"]
    resources = [module.object_store.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.backup_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadWriteBackups"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${module.object_store.bucket_arn}/${local.backup_prefix}/*"]
  }
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.object_store.kms_key_arn]
  }
}

module "backend_role" {
  count              = var.eks_oidc_provider_arn == null ? 0 : 1
  source             = "../../modules/irsa_role"
  role_name          = "${local.prefix}-backend"
  oidc_provider_arn  = var.eks_oidc_provider_arn
  oidc_provider_host = local.oidc_provider_host
  namespace          = var.k8s_namespace
  service_account    = "aegis-backend"
  policy_json        = data.aws_iam_policy_document.backend.json
}

module "engine_role" {
  count              = var.eks_oidc_provider_arn == null ? 0 : 1
  source             = "../../modules/irsa_role"
  role_name          = "${local.prefix}-engine"
  oidc_provider_arn  = var.eks_oidc_provider_arn
  oidc_provider_host = local.oidc_provider_host
  namespace          = var.k8s_namespace
  service_account    = "aegis-ai-engine"
  policy_json        = data.aws_iam_policy_document.engine.json
}

module "backup_role" {
  count              = var.eks_oidc_provider_arn == null ? 0 : 1
  source             = "../../modules/irsa_role"
  role_name          = "${local.prefix}-db-backup"
  oidc_provider_arn  = var.eks_oidc_provider_arn
  oidc_provider_host = local.oidc_provider_host
  namespace          = var.k8s_namespace
  service_account    = "aegis-db-backup"
  policy_json        = data.aws_iam_policy_document.backup.json
}

module "verifier_role" {
  count                = var.github_repository == null ? 0 : 1
  source               = "../../modules/github_oidc_role"
  role_name            = "${local.prefix}-model-verifier"
  github_repository    = var.github_repository
  github_environment   = var.github_environment
  create_oidc_provider = var.github_oidc_provider_arn == null
  oidc_provider_arn    = var.github_oidc_provider_arn
  bucket_arn           = module.object_store.bucket_arn
  kms_key_arn          = module.object_store.kms_key_arn
  read_prefix          = var.model_archive_prefix
}
