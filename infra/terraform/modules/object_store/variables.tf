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
  description = "Days a deleted or overwritten object version is kept."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
