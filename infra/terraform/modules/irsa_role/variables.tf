variable "role_name" {
  description = "IAM role name."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_provider_host" {
  description = "The OIDC issuer without https:// (e.g. oidc.eks.eu-west-1.amazonaws.com/id/ABC)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the ServiceAccount."
  type        = string
}

variable "service_account" {
  description = "Name of the ServiceAccount allowed to assume the role."
  type        = string
}

variable "policy_json" {
  description = "The role's only (inline) policy."
  type        = string
}

variable "tags" {
  description = "Tags for the role."
  type        = map(string)
  default     = {}
}
