terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.x: aws_lambda_permission.invoked_via_function_url (public Function URLs since October 2025).
      version = ">= 6.0, < 7.0"
    }
  }
}

provider "aws" {
  default_tags {
    tags = {
      Application = "stripe-webhooks"
      Environment = var.environment
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}
