terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }

  # State: local by default. For a team, configure a backend with `terraform init
  # -backend-config=...` (an S3 bucket with versioning and a DynamoDB lock table).
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ "app" = "aegis", "environment" = var.environment }, var.tags)
  }
}
