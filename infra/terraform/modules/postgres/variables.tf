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
  description = "Master password (at least 16 characters)."
  type        = string
  sensitive   = true
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
