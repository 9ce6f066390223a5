variable "identifier" {
  description = "RDS instance identifier (also names the subnet and security groups)."
  type        = string
}

variable "database_name" {
  description = "Database Aegis uses."
  type        = string
  default     = "aegis"
}

variable "username" {
  description = "Master user name."
  type        = string
  default     = "aegis"
}

variable "password" {
  description = "Master password: 16-128 printable ASCII characters without space, /, @ or \"."
  type        = string
  sensitive   = true

  # The error messages never quote the value (this is why the overlay's db_password has no
  # validation of its own: Terraform prints a failing root variable's value).
  validation {
    condition     = length(var.password) >= 16
    error_message = "db_password must be at least 16 characters (e.g. openssl rand -hex 24)."
  }
  validation {
    condition     = length(var.password) <= 128
    error_message = "db_password must be at most 128 characters (RDS PostgreSQL's limit)."
  }
  validation {
    # RDS refuses any other character at apply time, after the bucket was made.
    condition     = can(regex("^[!#-.0-?A-~]*$", var.password))
    error_message = "db_password may hold printable ASCII only, without space, '/', '@' or '\"' (RDS refuses those; base64 output holds '/': use openssl rand -hex 24)."
  }
  validation {
    condition     = !can(regex("(?i)replace.?me|change.?me", var.password))
    error_message = "db_password is a placeholder (REPLACE_ME, changeme): generate one, e.g. openssl rand -hex 24."
  }
  validation {
    condition     = length(distinct(split("", var.password))) >= 6
    error_message = "db_password has fewer than 6 distinct characters: generate one, e.g. openssl rand -hex 24."
  }
}

variable "engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "allocated_storage_gb" {
  description = "Initial storage in GiB."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
  default     = 100
}

variable "multi_az" {
  description = "Standby in a second availability zone."
  type        = bool
  default     = false
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Refuse to delete the instance."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Delete without a final snapshot (staging only)."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC for the instance; null uses the default VPC."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets for the DB subnet group (with vpc_id)."
  type        = list(string)
  default     = []
}

variable "allowed_security_group_ids" {
  description = "Security groups (e.g. the EKS node group's) that may connect on 5432."
  type        = list(string)
  default     = []
}

variable "allowed_cidr_blocks" {
  description = "CIDR blocks that may connect on 5432."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
