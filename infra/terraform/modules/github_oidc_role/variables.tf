variable "role_name" {
  description = "IAM role name (GitHub secret AWS_ROLE_TO_ASSUME = its ARN)."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the repository whose workflows may assume the role."
  type        = string
}

variable "github_environment" {
  description = "GitHub environment the workflow job must run in."
  type        = string
  default     = "staging"
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (only one may exist per account)."
  type        = bool
  default     = true
}

variable "oidc_provider_arn" {
  description = "ARN of an existing GitHub OIDC provider (when create_oidc_provider is false)."
  type        = string
  default     = null
}

variable "bucket_arn" {
  description = "ARN of the bucket holding the model archives."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the bucket's KMS key."
  type        = string
}

variable "read_prefix" {
  description = "Key prefix the role may list and read (model archives)."
  type        = string
  default     = "model-archives/"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
