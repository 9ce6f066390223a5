output "role_arn" {
  description = "ARN of the role (GitHub secret AWS_ROLE_TO_ASSUME)."
  value       = aws_iam_role.this.arn
}
