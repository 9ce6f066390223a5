variable "bucket_name" {
  description = "Globally unique S3 bucket name."
  type        = string
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds objects (staging only)."
  type        = bool
  default     = false
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

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
