variable "db_password" {
  description = "Master password of the RDS PostgreSQL instance: 16-128 printable ASCII characters without space, /, @ or \" (e.g. openssl rand -hex 24)."
  type        = string
  sensitive   = true
  # Validated by modules/postgres (variable password), not here: a failed validation of a root
  # variable prints its value, sensitive or not (Terraform 1.11), a module's does not.
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "aegis"
}

variable "environment" {
  description = "Environment name (part of resource names and tags)."
  type        = string
  default     = "staging"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "bucket_name" {
  description = "S3 bucket name; null gives NAME-ENVIRONMENT-ACCOUNT_ID."
  type        = string
  default     = null
}

variable "object_prefix" {
  description = "Key prefix Aegis keeps its objects under (OBJECT_STORE_URL s3://BUCKET/PREFIX)."
  type        = string
  default     = "aegis"
}

variable "model_archive_prefix" {
  description = "Key prefix of the signed model archives CI verifies (runbook: model-archives/)."
  type        = string
  default     = "model-archives/"
}

variable "force_destroy_bucket" {
  description = "Let `terraform destroy` delete a non-empty bucket (staging only)."
  type        = bool
  default     = false
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_multi_az" {
  description = "Standby in a second availability zone."
  type        = bool
  default     = false
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Delete the database without a final snapshot."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC of the EKS cluster; null puts the database in the default VPC."
  type        = string
  default     = null
}

variable "db_subnet_ids" {
  description = "Private subnets for the database (with vpc_id)."
  type        = list(string)
  default     = []
}

variable "db_allowed_security_group_ids" {
  description = "Security groups allowed to connect to PostgreSQL (the EKS nodes')."
  type        = list(string)
  default     = []
}

variable "db_allowed_cidr_blocks" {
  description = "CIDR blocks allowed to connect to PostgreSQL."
  type        = list(string)
  default     = []
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider; enables the IRSA roles."
  type        = string
  default     = null
}

variable "noncurrent_version_retention_days" {
  description = "Days S3 keeps a deleted or overwritten object version (a pruned backup too) before the lifecycle rule expires it; no role may delete a version sooner."
  type        = number
  default     = 90
  nullable    = false
  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1 (S3 lifecycle days)."
  }
  validation {
    condition     = floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days."
  }
}

variable "k8s_namespace" {
  description = "Namespace Aegis runs in (the IRSA trust names its ServiceAccounts)."
  type        = string
  default     = "aegis"
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose verifier workflow may read model archives; null: no role."
  type        = string
  default     = null
}

variable "github_environment" {
  description = "GitHub environment the verifier job runs in."
  type        = string
  default     = "staging"
}

variable "github_oidc_provider_arn" {
  description = "Existing GitHub OIDC provider in the account; null creates one."
  type        = string
  default     = null
}
